"""Stream processing on faust-streaming: parse, dedupe, enrich and moderate the raw callback stream."""

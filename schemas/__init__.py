"""Event and payload models shared by the edge, the stream processors and the sinks."""

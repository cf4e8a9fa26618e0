"""The ingest edge: the HTTP door for E云 callbacks, writing them raw to Kafka."""

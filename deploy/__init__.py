"""Deployment: the local Apache Kafka broker launcher (embedded mode) and the cluster-mode files."""

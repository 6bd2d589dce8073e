"""Kafka-compatible streaming service: the wire protocol (`protocol/`) and the broker."""

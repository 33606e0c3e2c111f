"""Persistence: the database engine and the tables the service writes."""

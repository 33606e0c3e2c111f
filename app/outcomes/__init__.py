"""Outcomes: what happened after a prediction, from the API or derived from FHIR data."""

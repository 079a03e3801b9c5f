"""The builder service."""

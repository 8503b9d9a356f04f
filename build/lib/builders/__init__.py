"""Builders: sources, the versioned store, generation clients and dataset builders."""

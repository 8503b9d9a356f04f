"""Presentation and publishing of versions: cards, plots, the HTML preview, Parquet export, the Hub."""

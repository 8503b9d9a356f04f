"""The data contract of polyground: row schemas, boxes, answer profiles, scoring.

Imports nothing of the project and no torch: every other part reads and
writes through these modules.
"""

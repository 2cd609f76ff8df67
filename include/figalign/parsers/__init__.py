"""Parsers: one source format each, all producing ``figalign.records.ParsedPaper``."""

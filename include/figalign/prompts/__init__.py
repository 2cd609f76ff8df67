"""Versioned prompt templates shipped with the package.

Each template is a file whose sha256 is stored with every output made from it, so a
changed word in a prompt is a new prompt version and adds rows instead of overwriting.
"""

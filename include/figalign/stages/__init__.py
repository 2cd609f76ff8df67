"""Stages: harvest, fetch, parse, filter, recaption, score, export — one contract for all."""

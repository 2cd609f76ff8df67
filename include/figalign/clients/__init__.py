"""Clients for outside services (GROBID, vLLM, HTTP sources); errors are classified here."""

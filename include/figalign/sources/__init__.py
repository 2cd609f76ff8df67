"""Paper sources: listing (OAI-PMH, PMC cloud), licences, disciplines and file locations.

A source module turns a provider's listing into ``PaperRecord`` values and knows where a
paper's files live; the harvest and fetch stages do the storing.
"""

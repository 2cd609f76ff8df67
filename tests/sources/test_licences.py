"""Licence normalisation and the process/export decisions."""

from __future__ import annotations

import pytest

from figalign.sources import licences as L


@pytest.mark.parametrize("raw,short", [
    ("http://creativecommons.org/licenses/by/4.0/", "cc-by"),
    ("https://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa"),
    ("http://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa"),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "cc-by-nc-nd"),
    ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0"),
    ("http://arxiv.org/licenses/nonexclusive-distrib/1.0/", "arxiv-nonexclusive"),
    ("http://arxiv.org/licenses/assumed-1991-2003/", "arxiv-nonexclusive"),
    ("https://example.org/my-licence", "other"),
    ("CC BY", "cc-by"), ("CC BY-NC", "cc-by-nc"), ("CC BY-NC-ND", "cc-by-nc-nd"), ("CC BY-ND", "cc-by-nd"),
    ("CC BY-SA", "cc-by-sa"), ("CC BY-NC-SA 4.0", "cc-by-nc-sa"), ("CC0", "cc0"), ("cc by nc", "cc-by-nc"),
    ("TDM", "other"), ("public domain", "public-domain"), ("", None), (None, None), ("  ", None),
])
def test_normalise(raw, short):
    assert L.normalise(raw) == short


def test_default_policy_processes_every_open_licence_and_exports_only_the_free_ones():
    policy = L.policy_for("arxiv")
    for lic in L.ALL:
        assert policy.process_exclusion(lic) is None
    assert {lic for lic in L.ALL if policy.export_exclusion(lic) is None} == {"cc-by", "cc-by-sa", "cc0", "public-domain"}
    assert "arxiv-nonexclusive not in the export allow-list" in policy.export_exclusion("arxiv-nonexclusive")
    assert "unknown" in policy.process_exclusion(None)


def test_opt_in_and_per_source_override():
    nc = L.LicencePolicy().with_export("cc-by-nc", "arxiv-nonexclusive")
    assert nc.export_exclusion("cc-by-nc") is None and nc.export_exclusion("cc-by-nd") is not None
    strict = L.LicencePolicy(process=frozenset({"cc-by"}))
    assert L.policy_for("pmc", {"pmc": strict}) is strict
    assert L.policy_for("arxiv", {"pmc": strict}).process_exclusion("cc-by-nc") is None
    with pytest.raises(ValueError):
        L.LicencePolicy().with_export("cc-by-xx")

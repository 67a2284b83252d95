"""Key authentication: generated (printed once) or given keys, Bearer on /score, health stays open."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from scorewatch.scoring.auth import KeyChecker, digest, resolve_keys
from tests.scoring.conftest import SCRIPTS, serving


def test_generated_keys_are_printed_once_kept_in_a_private_file_and_required(tmp_path: Path) -> None:
    with serving(SCRIPTS / "raw" / "score.py", tmp_path, "--auth", "--name", "keyed") as svc:
        output = svc.server.output()
        primary = re.search(r"primary:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        secondary = re.search(r"secondary:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        keys_file = tmp_path / "home" / "services" / "keyed.keys.json"
        assert json.loads(keys_file.read_text()) == {"primaryKey": primary, "secondaryKey": secondary}
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600

        missing = svc.post({"data": [1]})
        assert missing.status_code == 401
        assert "Bearer" in missing.json()["message"]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert svc.post({"data": [1]}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert svc.post({"data": [1]}, headers={"Authorization": f"Basic {primary}"}).status_code == 401
        for key in (primary, secondary):
            assert svc.post({"data": [1]}, headers={"Authorization": f"Bearer {key}"}).json() == {"result": [2]}
        assert svc.client.get("/").status_code == 200
        assert svc.client.options("/score").status_code == 200  # CORS preflights carry no key
        assert svc.client.get("/health/ready").status_code == 200
        assert svc.client.get("/swagger.json").json()["paths"]["/score"]["post"]["security"] == [{"Bearer": []}]

    # A second start reuses the file and does not print the keys again.
    with serving(SCRIPTS / "raw" / "score.py", tmp_path, "--auth", "--name", "keyed") as svc:
        assert primary not in svc.server.output()
        assert svc.post({"data": [1]}, headers={"Authorization": f"Bearer {primary}"}).status_code == 200


def test_keys_from_the_environment(tmp_path: Path) -> None:
    env = {"SCOREWATCH_AUTH": "1", "SCOREWATCH_AUTH_PRIMARY_KEY": "k-one", "SCOREWATCH_AUTH_SECONDARY_KEY": "k-two"}
    with serving(SCRIPTS / "raw" / "score.py", tmp_path, env=env) as svc:
        assert "k-one" not in svc.server.output()
        assert svc.post({"data": [1]}, headers={"Authorization": "Bearer k-two"}).status_code == 200
        assert svc.post({"data": [1]}, headers={"Authorization": "Bearer k-on"}).status_code == 401


def test_key_checker_and_resolution(tmp_path: Path) -> None:
    checker = KeyChecker([digest("a"), digest("b")])
    assert checker.check("Bearer a") and checker.check("bearer b")
    assert not checker.check(None) and not checker.check("Bearer") and not checker.check("Bearer c")
    keys_file = tmp_path / "k.json"
    first = resolve_keys("", "", keys_file)
    assert first.generated and first.primary != first.secondary
    again = resolve_keys("", "", keys_file)
    assert (again.primary, again.secondary, again.generated) == (first.primary, first.secondary, False)
    assert resolve_keys("given", "", keys_file).secondary == "given"

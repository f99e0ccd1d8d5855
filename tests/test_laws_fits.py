"""Saved fits: fit.json with checksums, posterior.nc, and load_fit refusing damaged files."""

import json

import numpy as np
import pytest

from multiscale.errors import DamagedFileError, InputError, MissingFileError
from multiscale.fileio import sha256_file
from multiscale.laws.fits import (
    FIT_JSON,
    FORMAT,
    POSTERIOR_NC,
    BayesFit,
    PointFit,
    check_fit_dir,
    load_fit,
    payload_sha256,
)
from multiscale.laws.forms import get_law

FAMS = ("germanic", "romance")


def _point_fit() -> PointFit:
    law = get_law("multilingual")
    vals = {"E": [1.5, 1.7], "A": [300.0, 420.0], "B": [800.0, 950.0], "alpha": [0.3, 0.33],
            "beta": [0.28, 0.31], "gamma": [0.12, 0.2]}
    return PointFit(law=law, families=FAMS, shared=(), draws={n: np.array([v]) for n, v in vals.items()},
                    N_ref=1e8, D_ref=1e10, n_runs={f: 9 for f in FAMS}, objective={f: 1e-4 for f in FAMS},
                    n_starts=9000, seconds=1.5)


def _bayes_fit(S=40) -> BayesFit:
    import arviz as az

    rng = np.random.default_rng(0)
    law = get_law("ratio")
    post = {"c": 3.0 + 0.1 * rng.standard_normal((2, S, 2)), "gamma": 0.2 + 0.01 * rng.standard_normal((2, S, 2))}
    idata = az.from_dict(posterior=post, coords={"family": list(FAMS)}, dims={n: ["family"] for n in post})
    draws = {n: v.reshape(-1, 2) for n, v in post.items()}
    return BayesFit(law=law, families=FAMS, shared=(), draws=draws, N_ref=1e7, D_ref=1e9,
                    n_runs={f: 20 for f in FAMS}, idata=idata, diagnostics={"max_rhat": float("nan")},
                    options={"chains": 2, "draws": S})


def _rewrite(path, edit, *, reseal: bool):
    """Edit fit.json's payload; `reseal` recomputes its checksum (a consistent but bad file)."""
    meta = json.loads(path.read_text())
    edit(meta)
    if reseal and "checksums" in meta:
        meta["checksums"][FIT_JSON] = payload_sha256(meta)
    path.write_text(json.dumps(meta))


def test_point_fit_round_trip_carries_a_checksum(tmp_path):
    fit = _point_fit()
    fit.save(tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / FIT_JSON).read_text())
    assert meta["format"] == FORMAT and meta["checksums"][FIT_JSON] == payload_sha256(meta)
    back = load_fit(tmp_path / "fit")
    assert isinstance(back, PointFit) and back.families == FAMS
    for n, v in fit.draws.items():
        np.testing.assert_array_equal(back.draws[n], v)
    assert back.n_starts == 9000 and back.objective == fit.objective


def test_bayes_fit_round_trip_checks_the_posterior(tmp_path):
    fit = _bayes_fit()
    fit.save(tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / FIT_JSON).read_text())
    assert meta["checksums"][POSTERIOR_NC] == sha256_file(tmp_path / "fit" / POSTERIOR_NC)
    back = load_fit(tmp_path / "fit")
    assert isinstance(back, BayesFit)
    np.testing.assert_array_equal(back.draws["gamma"], fit.draws["gamma"])
    assert np.isnan(back.diagnostics["max_rhat"])  # NaN survives (one chain: R-hat undefined)
    assert not [p for p in (tmp_path / "fit").iterdir() if ".tmp" in p.name]  # no temporary left


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON dict, found list"),
    ('{"law": "multilingual", "method": "lbf', "not valid JSON"),
    ("", "not valid JSON"),
])
def test_fit_json_that_is_not_an_object_is_refused_by_name(tmp_path, content, message):
    _point_fit().save(tmp_path / "fit")
    (tmp_path / "fit" / FIT_JSON).write_text(content)
    with pytest.raises(DamagedFileError, match=message) as err:
        load_fit(tmp_path / "fit")
    assert str(tmp_path / "fit" / FIT_JSON) in str(err.value)


def _drop(key):
    return lambda m: m.pop(key)


def _set(*keys, value):
    def edit(m):
        d = m
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_drop("params"), "the key 'params' is missing"),
    (_drop("families"), "the key 'families' is missing"),
    (_set("law", value="quadratic"), "unknown law 'quadratic'"),
    (_set("method", value="sgd"), "unknown fit method 'sgd'"),
    (_set("params", "romance", "gamma", value=float("nan")), "parameter 'gamma' of family 'romance' is nan"),
    (_set("params", "germanic", "E", value=float("inf")), "parameter 'E' of family 'germanic' is inf"),
    (_set("params", "germanic", "E", value="1.5"), "parameter 'E' of family 'germanic' is '1.5'"),
    (_set("N_ref", value=-1.0), "N_ref is -1.0, not a finite positive number"),
    (_set("families", value=["germanic", "germanic"]), "'families' must be distinct"),
    (_set("shared", value=["E"]), "'shared'"),
    (_set("n_runs", value=[1, 2]), "'n_runs' must be a dict"),
    (_set("params", "romance", value={}), "no value of 'E' for family 'romance'"),
])
def test_inconsistent_fit_json_is_refused_even_with_a_valid_checksum(tmp_path, edit, message):
    _point_fit().save(tmp_path / "fit")
    _rewrite(tmp_path / "fit" / FIT_JSON, edit, reseal=True)
    with pytest.raises(DamagedFileError, match=message) as err:
        load_fit(tmp_path / "fit")
    assert FIT_JSON in str(err.value)


def test_an_edited_fit_json_fails_its_checksum(tmp_path):
    _point_fit().save(tmp_path / "fit")
    _rewrite(tmp_path / "fit" / FIT_JSON, _set("params", "romance", "gamma", value=0.5), reseal=False)
    with pytest.raises(DamagedFileError, match="does not match its checksum"):
        load_fit(tmp_path / "fit")
    _rewrite(tmp_path / "fit" / FIT_JSON, _drop("checksums"), reseal=False)  # "format" says it had one
    with pytest.raises(DamagedFileError, match="the key 'checksums' is missing"):
        load_fit(tmp_path / "fit")


def test_damaged_posterior_is_refused_by_name(tmp_path):
    fit = _bayes_fit()
    fit.save(tmp_path / "fit")
    nc = tmp_path / "fit" / POSTERIOR_NC
    data = nc.read_bytes()
    nc.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="do not match the checksum") as err:
        load_fit(tmp_path / "fit")
    assert str(nc) in str(err.value)
    # a truncated file whose checksum fit.json was made to match: still refused, by name, not with h5py's error
    _rewrite(tmp_path / "fit" / FIT_JSON, _set("checksums", POSTERIOR_NC, value=sha256_file(nc)), reseal=True)
    with pytest.raises(DamagedFileError, match="cannot be read as a posterior") as err:
        load_fit(tmp_path / "fit")
    assert str(nc) in str(err.value)
    nc.unlink()
    with pytest.raises(DamagedFileError, match=f"{POSTERIOR_NC} is missing"):
        load_fit(tmp_path / "fit")


def _replace_posterior(fit_dir, idata) -> None:
    """Write `idata` as the fit's posterior.nc, with fit.json's checksums made to match."""
    nc = fit_dir / POSTERIOR_NC
    nc.unlink()
    idata.to_netcdf(str(nc))
    _rewrite(fit_dir / FIT_JSON, _set("checksums", POSTERIOR_NC, value=sha256_file(nc)), reseal=True)


def test_non_finite_posterior_draws_are_refused(tmp_path):
    fit = _bayes_fit()
    fit.idata.posterior["gamma"][0, 3, 1] = np.nan  # the fit's draws are a view of it
    with pytest.raises(InputError, match="parameter 'gamma' of family 'romance' is nan, not finite"):
        fit.save(tmp_path / "unsaved")  # NaN draws: refused at save, before writing anything
    assert not (tmp_path / "unsaved").exists()
    fit.idata.posterior["gamma"][0, 3, 1] = 0.2
    fit.save(tmp_path / "fit")
    idata = fit.idata.copy()
    idata.posterior["gamma"][0, 3, 1] = np.nan  # a posterior.nc damaged after saving
    _replace_posterior(tmp_path / "fit", idata)
    with pytest.raises(DamagedFileError, match="parameter 'gamma' has non-finite draws"):
        load_fit(tmp_path / "fit")


def test_a_posterior_whose_families_are_swapped_is_refused(tmp_path):
    """posterior.nc's family order must be fit.json's: swapped families would swap p*."""
    fit = _bayes_fit()
    fit.save(tmp_path / "fit")
    swapped = fit.idata.copy()
    swapped.posterior = swapped.posterior.assign_coords(family=list(FAMS[::-1]))
    _replace_posterior(tmp_path / "fit", swapped)
    with pytest.raises(DamagedFileError, match=r"its family order \['romance', 'germanic'\] is not fit.json's"):
        load_fit(tmp_path / "fit")


def test_missing_fit_and_bad_output_folders(tmp_path):
    with pytest.raises(MissingFileError, match="is not a saved fit"):
        load_fit(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(MissingFileError, match="is not a saved fit"):
        load_fit(tmp_path / "file.txt")
    with pytest.raises(InputError, match="is an existing file, not a folder"):
        check_fit_dir(tmp_path / "file.txt", what="--out")
    with pytest.raises(InputError, match="lies under .*file.txt.*which is a file"):
        _point_fit().save(tmp_path / "file.txt" / "sub" / "fit")
    assert check_fit_dir(tmp_path / "new" / "fit") == tmp_path / "new" / "fit"


@pytest.mark.parametrize("noise, needle", [
    ({"model": "wobbly"}, "'noise' must name a model"),
    ({"model": "scale", "slopes": ["p"], "centres": {"p": {"germanic": -1.0}}}, "lacks the centres of 'p'"),
    ({"model": "scale", "slopes": ["p"], "centres": {"p": {"germanic": -1.0, "romance": -2.0}}},
     "needs the draws 'noise_slope_p'"),
    ({"model": "size"}, "of model 'size' needs 'levels'"),
    ({"model": "size", "levels": {"germanic": [0.0]}}, "of model 'size' needs 'levels'"),
    ({"model": "size", "levels": {"germanic": [1e8], "romance": [1e8, 1e9]}}, "needs the draws 'size_sd'"),
])
def test_a_saved_noise_model_that_does_not_match_the_posterior_is_damaged(tmp_path, noise, needle):
    _bayes_fit().save(tmp_path / "fit")
    _rewrite(tmp_path / "fit" / FIT_JSON, _set("options", "noise", value=noise), reseal=True)
    with pytest.raises(DamagedFileError, match=needle):
        load_fit(tmp_path / "fit")

"""The hidden truth file: loading, validation, and how variant overrides combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.simulator.truth import Rates, TrueRates, TrueRatesError, load_true_rates


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rates.toml"
    path.write_text(text)
    return path


def test_the_packaged_truth_loads_and_has_demo_overrides() -> None:
    truth = load_true_rates()

    assert 0 < truth.defaults.click < truth.defaults.open < 1
    assert truth.variants["recruiter-body/progress-story"] == {"click": 0.039}


def test_one_override_is_taken_as_is_and_unknown_variants_use_defaults() -> None:
    truth = TrueRates(variants={"s/a": {"open": 0.3}})

    assert truth.rates_for(["s/a", "b/unknown", "123"]).open == 0.3
    assert truth.rates_for(["b/unknown"]) == Rates()


def test_overrides_of_several_variants_multiply_relative_to_the_default() -> None:
    truth = TrueRates(
        defaults=Rates(click=0.02), variants={"b/x": {"click": 0.03}, "s/y": {"click": 0.04}}
    )

    assert truth.rates_for(["b/x", "s/y"]).click == pytest.approx(0.02 * 1.5 * 2.0)
    assert truth.rates_for(["b/x", "b/x"]).click == pytest.approx(0.03)  # a variant counts once


def test_combined_rates_are_capped_at_one_and_a_zero_default_takes_the_largest() -> None:
    truth = TrueRates(
        defaults=Rates(click=0.5, spam_report=0.0),
        variants={"a/1": {"click": 1.0, "spam_report": 0.01}, "b/2": {"click": 1.0}},
    )

    rates = truth.rates_for(["a/1", "b/2"])

    assert rates.click == 1.0 and rates.spam_report == 0.01


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[defaults]\nclicks = 0.1\n", "unknown key defaults.clicks"),
        ("[defaults]\nclick = 1.5\n", "defaults.click must be in [0, 1]"),
        ('[defaults]\nclick = "high"\n', "defaults.click must be a number"),
        ("[defaults]\nbounce = 0.6\nblocked = 0.6\n", "bounce + defaults.blocked"),
        ("[timing]\nsigma = 0\n", "timing.sigma must be > 0"),
        ("[extra]\n", "unknown section [extra]"),
        ('[variants]\n"noslash" = { click = 0.1 }\n', '"<experiment>/<variant>"'),
        ('[variants]\n"a/b" = { bounce = 0.1 }\n', "is not one of open, click"),
        ('[variants]\n"a/b" = { click = 2 }\n', 'variants."a/b".click must be in [0, 1]'),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(TrueRatesError) as caught:
        load_true_rates(path)

    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrueRatesError, match="not found"):
        load_true_rates(tmp_path / "absent.toml")

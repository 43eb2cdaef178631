"""The norms' argument checks: what passes, what is returned, and each one-line message in full.

Plain Python over NumPy values (no JAX), so these run in milliseconds.
"""

import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.norms import NORMS, norm_names
from normlab.norms._checks import check_call, check_choice, check_num_features, check_number, check_positive_int


def test_positive_int_accepts_python_and_numpy_ints_and_returns_a_python_int():
    assert check_positive_int("option k", 1) == 1
    value = check_positive_int("option k", np.int64(7))
    assert value == 7 and type(value) is int


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None])
def test_positive_int_rejects_everything_else_naming_the_option(value):
    with pytest.raises(NormlabError) as error:
        check_positive_int("option k", value)
    assert str(error.value) == f"option k must be a positive int, got {value!r}"


def test_num_features_message_names_num_features():
    assert check_num_features(np.int32(3)) == 3
    with pytest.raises(NormlabError) as error:
        check_num_features(0)
    assert str(error.value) == "num_features must be a positive int, got 0"


def test_number_bounds_inclusive_exclusive_and_open_above():
    assert check_number("momentum", 0.0, low=0.0, high=1.0) == 0.0
    assert check_number("momentum", 1, low=0.0, high=1.0) == 1.0
    assert type(check_number("momentum", np.float32(0.5), low=0.0, high=1.0)) is float
    assert check_number("eps", 1e-12, low=0.0, low_inclusive=False) == 1e-12
    assert check_number("n_sigma", 1e9, low=1.0) == 1e9  # no upper bound


@pytest.mark.parametrize("value, low, high, low_inclusive, expected", [
    (0.0, 0.0, None, False, "option eps must be a number in (0.0, inf), got 0.0"),
    (-1e-9, 0.0, 1.0, True, "option eps must be a number in [0.0, 1.0], got -1e-09"),
    (1.5, 0.0, 1.0, True, "option eps must be a number in [0.0, 1.0], got 1.5"),
    (0.99, 1.0, None, True, "option eps must be a number in [1.0, inf), got 0.99"),
    (True, 0.0, None, True, "option eps must be a number in [0.0, inf), got True"),
    ("0.1", 0.0, None, True, "option eps must be a number in [0.0, inf), got '0.1'"),
])
def test_number_out_of_range_or_not_a_number_is_one_line_naming_the_interval(value, low, high, low_inclusive,
                                                                             expected):
    with pytest.raises(NormlabError) as error:
        check_number("eps", value, low=low, high=high, low_inclusive=low_inclusive)
    assert str(error.value) == expected


def test_choice_returns_the_choice_or_lists_the_valid_ones():
    assert check_choice("running_var", "unbiased", ("biased", "unbiased")) == "unbiased"
    with pytest.raises(NormlabError) as error:
        check_choice("running_var", "unbiassed", ("biased", "unbiased"))
    assert str(error.value) == "option running_var must be one of biased, unbiased; got 'unbiassed'"


class FourFeatures:
    num_features = 4


@pytest.mark.parametrize("shape", [(2, 4), (2, 3, 3, 4), (1, 4)])
def test_call_accepts_features_last_with_a_bool_mode(shape):
    check_call(FourFeatures(), np.zeros(shape), True)
    check_call(FourFeatures(), np.zeros(shape), np.bool_(False))


@pytest.mark.parametrize("shape", [(4,), (2, 5), (2, 4, 3)])
def test_call_rejects_inputs_without_features_last(shape):
    with pytest.raises(NormlabError) as error:
        check_call(FourFeatures(), np.zeros(shape), True)
    assert str(error.value) == ("FourFeatures: expected input (N, 4) or (N, H, W, 4) with features last, "
                                f"got shape {shape}")


@pytest.mark.parametrize("train", [1, None, "train"])
def test_call_rejects_a_mode_that_is_not_a_bool(train):
    with pytest.raises(NormlabError) as error:
        check_call(FourFeatures(), np.zeros((2, 4)), train)
    assert str(error.value) == (f"FourFeatures: train must be a Python bool (True: batch statistics, False: "
                                f"running averages), got {train!r}; under jax.jit pass it as a static argument")


def test_norm_names_lists_the_registry_with_none_and_batch_first():
    names = norm_names()
    assert names[:2] == ["none", "batch"] and names == list(NORMS) and len(set(names)) == len(names)

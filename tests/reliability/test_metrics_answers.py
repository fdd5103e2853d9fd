"""parse_answer, the adapter's pure reading of a Prometheus answer: total over any input, one sample or a failure
kind, never zero for something that is not a number."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.operator import prometheus as prom


def vector(*values) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "vector",
                                                     "result": [{"metric": {}, "value": [1.0, v]} for v in values]}})


@pytest.mark.parametrize("status, text, kind", [
    (200, vector("2.5"), ""),
    (200, vector("0"), ""),
    (200, vector(3), ""),  # a number where Prometheus sends a string: still the number
    (503, "no healthy upstream", prom.HTTP_ERROR),
    (500, vector("1"), prom.HTTP_ERROR),  # a 5xx is an error whatever its body
    (502, vector("1").encode().decode(), prom.HTTP_ERROR),
    (200, "{", prom.MALFORMED),
    (200, "", prom.MALFORMED),
    (200, "[1, 2]", prom.MALFORMED),
    (200, '"success"', prom.MALFORMED),
    (200, json.dumps({"status": "success"}), prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": []}), prom.MALFORMED),
    (200, json.dumps({"status": "pending", "data": {}}), prom.MALFORMED),
    (404, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}), prom.HTTP_ERROR),
    (400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}), prom.QUERY_ERROR),
    (200, json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                    "result": [{"metric": {}, "values": [[1, "2"]]}]}}), prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}), prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": {}}}), prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}), prom.NO_SERIES),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
     prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": ["x"]}}), prom.MALFORMED),
    (200, json.dumps({"status": "success", "data": {"resultType": "vector",
                                                    "result": [{"value": [1, "2", "3"]}]}}), prom.MALFORMED),
    (200, vector("NaN"), prom.NO_SAMPLES),
    (200, vector("+Inf"), prom.MALFORMED),
    (200, vector("-Inf"), prom.MALFORMED),
    (200, vector("-1"), prom.MALFORMED),
    (200, vector("lots"), prom.MALFORMED),
    (200, vector(""), prom.MALFORMED),
    (200, vector(True), prom.MALFORMED),
    (200, vector(None), prom.MALFORMED),
    (200, vector(["1"]), prom.MALFORMED),
    (200, vector("1", "2"), prom.MALFORMED),
])
def test_answers(status, text, kind):
    answer = prom.parse_answer(status, text)
    assert answer.failure == kind, answer
    assert (answer.value is None) == bool(kind) and (bool(answer.why) == bool(kind))


def test_values_are_read_exactly():
    assert prom.parse_answer(200, vector("2.5")).value == 2.5
    assert prom.parse_answer(200, vector("0")).value == 0.0  # a true zero stays a zero
    assert prom.parse_answer(200, vector("1e-3")).value == pytest.approx(0.001)


@given(st.integers(min_value=0, max_value=599), st.text(max_size=300))
def test_any_text_is_a_value_or_a_failure(status, text):
    answer = prom.parse_answer(status, text)
    assert (answer.value is None) == (answer.failure in prom.FAILURE_ORDER)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["status", "data", "errorType", "error"]), json_values, max_size=4),
       st.sampled_from([200, 400, 422, 503]))
def test_any_json_object_is_a_value_or_a_failure(body, status):
    answer = prom.parse_answer(status, json.dumps(body))
    assert answer.value is None or (answer.value >= 0 and answer.value != float("inf"))
    assert (answer.value is None) == bool(answer.failure)


@given(st.lists(json_values, max_size=3))
def test_any_result_list_is_a_value_or_a_failure(result):
    text = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
    answer = prom.parse_answer(200, text)
    assert (answer.value is None) == bool(answer.failure)
    if answer.value is not None:
        assert len(result) == 1 and float(result[0]["value"][1]) == answer.value


def test_failure_order_names_the_most_severe():
    m = prom.ServiceMetrics(errors={"waiting": "a", "running": "b"},
                            failures={"waiting": prom.NO_SERIES, "running": prom.TIMEOUT})
    assert m.failure_of(["waiting", "running"]) == prom.TIMEOUT
    assert m.failure_of(["waiting"]) == prom.NO_SERIES
    assert m.failure_of(["kv_usage"]) == ""


def test_engine_count_missing_while_load_answers_is_no_data():
    m = prom.ServiceMetrics(0.1, 0.01, 0.0, 1.0, 0.1, 2.0, engines=None, errors={"engines": "no series"},
                            failures={"engines": prom.NO_SERIES})
    covered = prom.covering(m, 2)
    assert covered.arrival_rate is None and covered.waiting is None
    assert covered.failures["waiting"] == prom.NO_SERIES and "engine count" in covered.errors["waiting"]

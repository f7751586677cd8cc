"""The fast materialization's bulk encoders give Feast's own bytes (values, value_text, entity keys, key order).

Feast's materialization converts each arrow column with `python_values_to_proto_values(column.to_numpy(...))`,
serializes each `Value` and (SQLite) stores `extract_text_and_num`'s text; keys go through `serialize_entity_key`
with the repo's entity_key_serialization_version (3). These tests hold the bulk encoders to exactly that.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from nextbest.features.online_write import encode_column, entity_keys, key_order

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_TYPES = {
    "float64": ValueType.DOUBLE,
    "float32": ValueType.FLOAT,
    "int64": ValueType.INT64,
    "int32": ValueType.INT32,
    "bool": ValueType.BOOL,
    "string": ValueType.STRING,
}
_COLUMNS = {
    "float64": pa.array(
        [1.5, None, 0.0, -0.0, math.inf, -math.inf, 1e-05, 1e16, 123456.789, 0.1 + 0.2, -2.5, 1.5, 5e-324]
        + list(np.random.default_rng(1).normal(size=200) * 1e4),
        type=pa.float64(),
    ),
    "float64_nan": pa.array([math.nan, 2.0, None, 2.0, math.nan], type=pa.float64()),
    "float32": pa.array([0.1, None, -0.0, 3.4e38, 1.0, 0.1], type=pa.float32()),
    # With a null, arrow hands Feast floats: keep within 2**53 there (Feast itself fails on 2**63 - 1 as a float).
    "int64": pa.array([0, 1, -1, None, 2**40, -(2**53), 127, 128, 300, 1], type=pa.int64()),
    "int64_extremes": pa.array([-(2**63), 2**63 - 1, 0, -1], type=pa.int64()),
    "int64_dense": pa.array(list(range(-5, 500)), type=pa.int64()),
    "int32": pa.array([0, -1, None, 2**31 - 1, -(2**31), 7], type=pa.int32()),
    "bool": pa.array([True, False, None, True], type=pa.bool_()),
    "string": pa.array(["ab", "", None, "é", "ab", "x" * 300], type=pa.string()),
}


def _feast(column: pa.Array, kind: str) -> tuple[list[bytes], list[str | None]]:
    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), _TYPES[kind])
    return [p.SerializeToString() for p in protos], [extract_text_and_num(p, False)[0] for p in protos]


@pytest.mark.parametrize("name", list(_COLUMNS))
def test_encode_column_gives_feasts_value_bytes_and_value_text(name: str) -> None:
    kind = name.split("_")[0]
    column = _COLUMNS[name]
    blobs, texts = _feast(column, kind)
    # The fast path reads its rows as a pandas frame (DuckDB's .df()): nullable ints come as float with NaN.
    frame_column = column.to_pandas()
    encoded = encode_column(frame_column, kind)
    assert encoded.row_blobs().tolist() == blobs
    assert encoded.row_texts().tolist() == texts
    if column.null_count:
        assert b"" in blobs  # Feast 0.67 writes an empty Value for a missing value ...
        assert None in texts  # ... and no value_text


def test_a_missing_double_is_an_empty_value_in_feast_too() -> None:
    protos = python_values_to_proto_values(np.array([math.nan, 1.0]), ValueType.DOUBLE)
    assert protos[0].SerializeToString() == b"" == Value().SerializeToString()
    assert encode_column(pd.Series([math.nan, 1.0]), "float64").row_blobs().tolist()[0] == b""


@pytest.mark.parametrize(
    ("key_type", "values"),
    [
        ("int", [0, 1, 255, 256, 2**40, -1, -(2**63), 2**63 - 1, 1_000_000, 65536]),
        ("str", ["C-0001", "", "é", "a" * 70, "C-0002", "B"]),
    ],
)
def test_entity_keys_are_feasts_serialized_keys_and_sort_in_byte_order(key_type: str, values: list) -> None:
    def value(v: object) -> Value:
        return Value(int64_val=v) if key_type == "int" else Value(string_val=v)

    expected = [serialize_entity_key(EntityKey(join_keys=["customer_id"], entity_values=[value(v)]), 3) for v in values]
    assert entity_keys(pd.Series(values), "customer_id", key_type, 3) == expected
    order = key_order(pd.Series(values), expected, key_type)
    assert [expected[i] for i in order] == sorted(expected)

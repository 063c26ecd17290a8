"""A builder that reports success over a short external-data file (a disk that filled up under it)
is caught at export, not when a measurement loads the folder."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tasks.formats.onnx.export import OnnxExportError, check_external_data


def _folder_with_external_data(folder):
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), name="w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])], [weight])
    onnx.save_model(helper.make_model(graph), str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx.data"


def test_a_complete_folder_passes_and_a_short_data_file_is_named(tmp_path):
    data = _folder_with_external_data(tmp_path)
    check_external_data(tmp_path)
    data.write_bytes(data.read_bytes()[:1000])  # what ENOSPC left behind
    with pytest.raises(OnnxExportError, match=r"tensor w ends at byte 16,384 of model.onnx.data, which has 1,000 bytes"):
        check_external_data(tmp_path)

"""AnnData's on-disk HDF5 layout, written and read with h5py alone (anndata is not a run-time need).

Only the element kinds isoformer writes are covered; each HDF5 object carries the
``encoding-type`` / ``encoding-version`` attributes ``anndata.read_h5ad`` dispatches on:

=================  =================  ================  ==========================================
element            encoding-type      encoding-version  HDF5 object
=================  =================  ================  ==========================================
file root          anndata            0.1.0             group holding X obs var uns obsm varm ...
dense matrix       array              0.2.0             dataset
string vector      string-array       0.2.0             dataset of variable-length UTF-8 strings
numeric vector     array              0.2.0             dataset
data frame         dataframe          0.2.0             group; attrs ``_index`` (name of the index
                                                        dataset) and ``column-order``
mapping            dict               0.1.0             group, one member per key
string scalar      string             0.2.0             scalar dataset
number / bool      numeric-scalar     0.2.0             scalar dataset
=================  =================  ================  ==========================================

Writes are deterministic: h5py records no timestamps (``track_times=False``), so the same content
written in the same order gives the same bytes.
"""

import h5py
import numpy as np

STRING_DTYPE = h5py.string_dtype(encoding="utf-8")

ENCODINGS = {
    "anndata": "0.1.0",
    "array": "0.2.0",
    "string-array": "0.2.0",
    "dataframe": "0.2.0",
    "dict": "0.1.0",
    "string": "0.2.0",
    "numeric-scalar": "0.2.0",
}


def set_encoding(obj, encoding_type):
    obj.attrs["encoding-type"] = encoding_type
    obj.attrs["encoding-version"] = ENCODINGS[encoding_type]


def create_array(group, name, shape, dtype):
    """An empty dense ``array`` element of ``shape`` to fill by slices (contiguous storage)."""
    dataset = group.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
    set_encoding(dataset, "array")
    return dataset


def write_array(group, name, values):
    """A dense numeric ``array`` element (any shape)."""
    values = np.asarray(values)
    dataset = group.create_dataset(name, data=values, track_times=False)
    set_encoding(dataset, "array")
    return dataset


def write_string_array(group, name, strings):
    """A ``string-array`` element: 1-D, variable-length UTF-8."""
    data = np.array(list(strings), dtype=object)
    dataset = group.create_dataset(name, shape=data.shape, dtype=STRING_DTYPE, track_times=False)
    if len(data):
        dataset[...] = data
    set_encoding(dataset, "string-array")
    return dataset


def write_dataframe(group, name, index, columns):
    """A ``dataframe`` element: ``index`` strings and ``columns`` as ``{name: values}`` in order.

    A column given as a numpy array becomes a numeric ``array``; any other sequence is taken as
    strings and becomes a ``string-array`` (so an empty table keeps its column kinds).
    """
    frame = group.create_group(name)
    set_encoding(frame, "dataframe")
    frame.attrs["_index"] = "_index"
    # anndata itself writes an empty float64 array when there are no columns.
    frame.attrs["column-order"] = list(columns) if columns else np.array([], dtype=np.float64)
    write_string_array(frame, "_index", index)
    for column, values in columns.items():
        if isinstance(values, np.ndarray):
            write_array(frame, column, values)
        else:
            write_string_array(frame, column, values)
    return frame


def write_mapping(group, name, mapping):
    """A ``dict`` element; values may be str, bool, int, float, list of str, or nested dicts."""
    node = group.create_group(name)
    set_encoding(node, "dict")
    for key, value in mapping.items():
        if isinstance(value, dict):
            write_mapping(node, key, value)
        elif isinstance(value, str):
            dataset = node.create_dataset(key, data=value, dtype=STRING_DTYPE, track_times=False)
            set_encoding(dataset, "string")
        elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            dataset = node.create_dataset(key, data=value, track_times=False)
            set_encoding(dataset, "numeric-scalar")
        elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            write_string_array(node, key, value)
        else:
            raise TypeError(f"cannot store {key}={value!r} in an AnnData dict element")
    return node


def write_anndata_root(handle):
    """Mark ``handle`` as an AnnData file and add the empty elements anndata writes."""
    set_encoding(handle, "anndata")
    for name in ("layers", "obsm", "obsp", "varm", "varp"):
        set_encoding(handle.create_group(name), "dict")


def read_strings(dataset):
    """A ``string-array`` element as a list of str."""
    return list(dataset.asstr()[()]) if dataset.shape[0] else []


def read_dataframe(group):
    """``(index, {column: list of values})`` of a ``dataframe`` element, in column order."""
    index = read_strings(group[group.attrs["_index"]])
    order = [str(name) for name in group.attrs["column-order"]]
    columns = {}
    for name in order:
        dataset = group[name]
        if dataset.attrs.get("encoding-type") == "string-array":
            columns[name] = read_strings(dataset)
        else:
            columns[name] = dataset[()].tolist()
    return index, columns


def read_mapping(group):
    """A ``dict`` element as plain Python values (str, bool, int, float, list, dict)."""
    mapping = {}
    for key, node in group.items():
        encoding = node.attrs.get("encoding-type")
        if isinstance(node, h5py.Group):
            mapping[key] = read_mapping(node)
        elif encoding == "string":
            mapping[key] = node.asstr()[()]
        elif encoding == "string-array":
            mapping[key] = read_strings(node)
        else:
            mapping[key] = node[()].item()
    return mapping

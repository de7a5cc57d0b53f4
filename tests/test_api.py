import facecli


def test_public_api_is_pinned() -> None:
    assert sorted(facecli.__all__) == [
        "BackendUnavailable", "Classification", "FacecliError", "Faces", "InputError", "Landmarks", "Motion",
        "NoFaceFound", "OutputError", "Reconstruction", "UsageError", "__version__", "animate", "classify", "detect",
        "landmarks", "read_header", "read_table", "reconstruct", "reenact",
    ]
    for name in facecli.__all__:
        assert hasattr(facecli, name)


def test_errors_share_one_root() -> None:
    for cls in (facecli.InputError, facecli.NoFaceFound, facecli.OutputError, facecli.UsageError,
                facecli.BackendUnavailable):
        assert issubclass(cls, facecli.FacecliError)
    assert facecli.UsageError.exit_code == 2 and facecli.InputError.exit_code == 1

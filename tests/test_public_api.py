"""The public Python surface is declared once, in scorewatch.__all__."""

import scorewatch


def test_all_names_resolve():
    for name in scorewatch.__all__:
        assert getattr(scorewatch, name) is not None, name


def test_all_is_exactly_the_declared_surface():
    assert sorted(scorewatch.__all__) == ["__version__", "track_dependency", "track_event", "track_metric"]


def test_the_sdk_declares_its_surface_once():
    import scorewatch.sdk

    for name in scorewatch.sdk.__all__:
        assert getattr(scorewatch.sdk, name) is not None, name
    assert {"Workspace", "Model", "InferenceConfig", "Webservice", "AciWebservice", "AksWebservice",
            "LocalWebservice", "Environment", "CondaDependencies", "ComputeTarget", "AksCompute",
            "WebserviceException", "install_azureml"} <= set(scorewatch.sdk.__all__)

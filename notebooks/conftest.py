"""nbval settings: outputs that legitimately vary between runs are not compared."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += (
            "text/html",
            "application/vnd.plotly.v1+json",
            "application/vnd.jupyter.widget-view+json",
            "stderr",
        )

pytest_plugins = ["infra.local.pytest_plugin"]

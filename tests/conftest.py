pytest_plugins = ["tests.lab.fixture"]

"""The node pack's test markers."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: writes and loads a real-size model (a minute or more on two cores); `-m 'not slow'` leaves it out")

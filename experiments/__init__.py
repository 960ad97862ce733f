"""Tasks, models, methods and the runner that scores every method on one eval set."""

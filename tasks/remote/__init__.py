"""Remote measurement: hardware classes, submitting and waiting, workers, build runners."""

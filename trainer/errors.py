"""User-facing errors of the trainer stage: the CLI prints them in one line and exits with exit_code.

    >>> from trainer.errors import TrainerError
    >>> error = TrainerError("unknown model 'resnet18'; choose one of fmnist-bnn, resnet20, ...")
    >>> error.exit_code, str(error).split(";")[0]
    (2, "unknown model 'resnet18'")

Subclasses for what the training loop reports: ``trainer.data.DataError`` (exit 2),
``trainer.train.TrainingDiverged`` (exit 1), ``trainer.interrupt.TrainingInterrupted`` (exit 130).
"""


class TrainerError(Exception):
    """A problem with the user's input or environment, not a bug: exit code 2, no traceback."""

    exit_code = 2

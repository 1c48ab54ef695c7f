"""ResNet-18 as the GreenWise paper serves it: TorchServe's image classifier, with PyTorch limited
to one intra-op and one inter-op thread in each worker (TorchServe runs one worker per core).

build_mar.py puts this file into resnet-18.mar as its handler.
"""

import logging

import torch
from ts.torch_handler.image_classifier import ImageClassifier

log = logging.getLogger(__name__)

# Before the worker runs any PyTorch work: inter-op threads can only be set once, up front.
torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError as e:
    log.warning("could not set PyTorch inter-op threads to 1: %s", e)


class GreenwiseResNet(ImageClassifier):
    """TorchServe's ImageClassifier (top-5 classes of each image of a batch), unchanged."""

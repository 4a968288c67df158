"""curve.png: a run with one evaluation draws its point (a line alone draws none)."""

import matplotlib.image
import numpy as np

from purerl import logging as plog


def test_a_one_evaluation_curve_shows_its_point(tmp_path):
    path = str(tmp_path / "curve.png")
    # The mean (20) sits in the middle of the axes, whose y range is min 10 to max 30;
    # the legend is at the lower right, away from it.
    plog.plot_curve(path, [512], [[10.0, 30.0, 20.0]], "ppo on CartPole-v1")
    image = matplotlib.image.imread(path)[..., :3]
    height, width, _ = image.shape
    middle = image[int(0.3 * height):int(0.6 * height), int(0.3 * width):int(0.7 * width)]
    mean_colour = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's C0, the mean's
    drawn = np.abs(middle - mean_colour).max(-1) < 0.1
    assert drawn.sum() >= 5, drawn.sum()

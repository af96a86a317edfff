"""Healing before the first label: what the stream alone can show, and what it can undo.

* :mod:`~shared.labelfree.reference`: the training rows per class, as a marginal at any
  fraud rate, and the model's calibration on the validation rows;
* :mod:`~shared.labelfree.prior`: the fraud rate from unlabeled scores (EM, BBSE);
* :mod:`~shared.labelfree.diagnosis`: which features moved and how, whether a unit change
  and a fraud-rate change explain it all, and the calibration that undoes it;
* :mod:`~shared.labelfree.cycle`: the label-free heal cycle and its gate.
"""

from shared.labelfree.cycle import LabelFreeConfig, label_free_cycle
from shared.labelfree.diagnosis import Diagnosis, diagnose
from shared.labelfree.reference import LabelFreeReference

__all__ = ["Diagnosis", "LabelFreeConfig", "LabelFreeReference", "diagnose", "label_free_cycle"]

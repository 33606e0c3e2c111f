"""Names of the report's output columns (one row per group; intervals as ``_low``/``_high``)."""

from __future__ import annotations

N = "n"
EVENTS = "events"
LABELLED = "labelled"
FLAGGED = "flagged"
FLAG_RATE = "flag_rate"
MEAN_PREDICTED = "mean_predicted_risk"
TPR = "tpr"
FNR = "fnr"
SPECIFICITY = "specificity"
PPV = "ppv"
NPV = "npv"
OBSERVED_EXPECTED = "observed_expected"
CALIBRATION_FLAG = "calibration_flag"
CALIBRATION_SLOPE = "calibration_slope"
BRIER = "brier"
AUROC = "auroc"
UNDERPOWERED = "underpowered"
REFERENCE = "reference"

LOW = "_low"
HIGH = "_high"
RATIO = "_ratio"
FLAG = "_flag"

SUPPRESSED = "suppressed"
DISPARITY_METRICS = (TPR, FNR, PPV, FLAG_RATE)

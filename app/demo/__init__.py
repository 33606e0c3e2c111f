"""``bedside demo``: a simulated EHR day against a local Bedside, then the dashboard to look at."""

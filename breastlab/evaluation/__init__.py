"""Evaluating bundles on dataset folders: scores and reports, click simulation, active-learning studies, figures."""

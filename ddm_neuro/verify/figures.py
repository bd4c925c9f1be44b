"""Figures of a verification report (stub)."""


def write_figures(report, folder, traj=None, force=False):
    return []

"""Time travel: parse points in the log (cycle=N, seq=N, time=ISO) and rebuild state there."""

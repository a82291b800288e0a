"""Bridges to the tools trackers are judged with: the VOT toolkit (TraX), got10k, pytracking/OSTrack."""

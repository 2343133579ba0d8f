"""What service.py uses beside pipeline.scoring: its request guard and its demo page."""

"""The BIDS App (`m2diff bids BIDS_DIR OUTPUT_DIR participant|group`): PET-BIDS in, BIDS-Derivatives out."""

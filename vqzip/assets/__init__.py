"""Small files shipped with the package (the demo's sample image)."""

"""ewaste-stream: vision software that sorts electronic waste on a recycling line."""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = (
    "Battery", "Keyboard", "Microwave", "Mobile", "Mouse",
    "PCB", "Player", "Printer", "Television", "Washing Machine",
)

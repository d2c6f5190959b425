"""``python -m querycraft service=<stage>``: see querycraft.cli."""

from querycraft.cli import main

if __name__ == "__main__":
    main()

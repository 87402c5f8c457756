"""The stages that transform a message, one module each (what a stage is: ../stage.py;
every stage by name: ../registry.py)."""

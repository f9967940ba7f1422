try:
    from rnstore.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: nothing to clean up
    raise SystemExit(130) from None

main()

try:
    from rnstore.cli import main
    main()
except KeyboardInterrupt:  # Ctrl-C while starting, before main() set its handler: nothing to clean up
    raise SystemExit(130) from None

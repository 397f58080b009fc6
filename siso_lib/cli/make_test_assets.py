"""`siso-make-test-assets DIR`: write the offline models with random weights (offline/tiny_models.py):
tiny for CPU tests and demos, full-size for GPU benchmarks."""

from __future__ import annotations

from .common import OneLineArgumentParser, quiet_libraries

FAMILIES = ("sdxl", "flux", "sana", "flux2_klein")  # offline.tiny_models.FAMILIES (a test keeps them equal)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="siso-make-test-assets",
        description=(
            "Write offline models with random weights (tiny for CPU tests, full for GPU benchmarks): "
            "SDXL, DINOv2, IR and CLIP always, FLUX.1-schnell, Sana and FLUX.2 klein on request."
        ),
    )
    parser.add_argument("directory", help="folder to write sdxl/, dino/, ir_features.pth, clip/, grounding-dino/ and sam/ (tiny) (and flux/, sana/, flux2_klein/) into")
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument(
        "--model_family",
        choices=FAMILIES + ("all",),
        default="sdxl",
        help="generator family to write besides SDXL, DINOv2 and IR (default sdxl: only those)",
    )
    args = parser.parse_args(argv)
    families = FAMILIES if args.model_family == "all" else ("sdxl", args.model_family)
    from ..offline.tiny_models import write_test_assets

    quiet_libraries()  # the paths below are the output, not the libraries' "Writing model shards" bars
    paths = write_test_assets(args.directory, args.size, families)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

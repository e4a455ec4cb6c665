"""The Core ML target: ExportedModel -> ML Program .mlpackage (or legacy .mlmodel) with coremltools.

Flow: settings (format, deployment target: the lowest the precision allows unless given) -> int8 only:
the run's shared PT2E int8 program (targets/coreml/int8.py) -> source (torch.export, or TorchScript)
-> ct.convert (fp32 or fp16 compute) -> Core ML-side weight compression / pruning -> names and metadata -> save -> reload
without compiling and check what can be checked on this host. Core ML executes only on macOS:
elsewhere the artifact is marked unverified with the reason, never passed silently.
"""
from __future__ import annotations

import dataclasses
import json
import os
from importlib import metadata
from types import MappingProxyType
from typing import Any

from edgekit.errors import ConversionError, UsageError
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, package_version
from edgekit.targets.coreml import analysis
from edgekit.targets.coreml.library import import_coremltools
from edgekit.targets.base import Runtime
from edgekit.targets.coreml.reference import MILReferenceRuntime, reason_unverifiable
from edgekit.targets.coreml.runtime import CoreMLRuntime, can_execute
from edgekit.targets.coreml.settings import COMPUTE_UNITS, FORMATS, FRONTENDS, SPEC_VERSIONS, CoreMLSettings

COMPRESSED_PRECISIONS = ("int8", "int8-weight-only", "int4-weight-only", "palettize8", "palettize6", "palettize4")



class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    extra_suffixes = (".mlmodel",)
    on_device = OnDevice("Core ML", apps=MappingProxyType({"ios": "coreml"}), app_suffixes=(".mlpackage", ".mlmodel"))
    precisions = ("none", "fp16", "int8", "int8-weight-only", "int4-weight-only", "palettize8", "palettize6", "palettize4")
    default_precision = "fp16"  # Core ML's own recommendation: the Neural Engine computes in fp16
    requires = ("coremltools",)
    supports_dynamic = True
    shared_int8 = True  # int8 converts the run's shared PT2E program (targets/coreml/int8.py)

    @classmethod
    def read_settings(cls, options, precision=None) -> CoreMLSettings:
        """targets/coreml/settings.py: which deployment target and format a precision needs decide
        what is valid, so the settings are built for a precision."""
        return CoreMLSettings.build(options.options_for(cls.name), precision or cls.default_precision)

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--format", dest="coreml_format", choices=tuple(FORMATS),
                            help="mlpackage: ML Program (iOS15+, default); mlmodel: legacy neural network for older devices")
        parser.add_argument("--deployment-target", dest="coreml_deployment_target", metavar="OS",
                            help=f"oldest OS the model must run on: {', '.join(SPEC_VERSIONS)}; "
                            "default: the lowest the precision allows (fp16: iOS15, int8-weight-only/palettize: iOS16, int8: iOS17, int4: iOS18)")
        parser.add_argument("--compute-units", dest="coreml_compute_units", choices=tuple(COMPUTE_UNITS),
                            help="where Core ML may run the model (recorded in the model; default all)")
        parser.add_argument("--image-input", dest="coreml_image_input", action="store_true", default=None,
                            help="make the first 1x3xHxW (or 1x1xHxW) input an image: scale and bias from --mean/--std, "
                            "channel order from --color-layout")
        parser.add_argument("--image-input-name", dest="coreml_image_input_name", metavar="NAME",
                            help="make the input NAME the image input (implies --image-input)")
        parser.add_argument("--prune", dest="coreml_prune", type=float, metavar="SPARSITY",
                            help="magnitude-prune weights to this sparsity (0..1), stored sparse; combines with --quantize")
        parser.add_argument("--coreml-frontend", dest="coreml_frontend", choices=FRONTENDS,
                            help="how the model reaches coremltools: torch.export (default) or torchscript (torch.jit.trace)")
        parser.add_argument("--description", dest="coreml_description", metavar="TEXT", help="model description (Core ML metadata)")
        parser.add_argument("--author", dest="coreml_author", metavar="TEXT", help="model author (Core ML metadata)")
        parser.add_argument("--license", dest="coreml_license", metavar="TEXT", help="model license (Core ML metadata)")
        parser.add_argument("--model-version", dest="coreml_version", metavar="TEXT", help="model version string (Core ML metadata)")

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        keys = ("format", "deployment_target", "compute_units", "image_input", "prune", "frontend",
                "description", "author", "license", "version")
        values = {key: getattr(args, f"coreml_{key}", None) for key in keys}
        if getattr(args, "coreml_image_input_name", None):
            values["image_input"] = args.coreml_image_input_name
        targets = [t.lower() for t in (getattr(args, "target", None) or [])]
        if cls.name in targets:  # fail on contradictory flags now, before the model is loaded
            from edgekit.options import get_precision

            quantize = getattr(args, "quantize", None)
            CoreMLSettings.build(values, get_precision(quantize).name if quantize else cls.default_precision)
        return {k: v for k, v in values.items() if v is not None}

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        from edgekit import __version__
        from edgekit.targets.coreml import convert as steps, quantize

        settings = CoreMLSettings.build(options.options_for(self.name), precision)
        ct = import_coremltools()
        if options.labels and settings.frontend == "torchscript" and settings.format == "mlpackage" and settings.spec_version > 6:
            raise UsageError(
                "--labels with --coreml-frontend torchscript works only with --deployment-target iOS15/macOS12 "
                "(coremltools 9 cannot attach a classifier to a later TorchScript conversion); use the default torch.export frontend"
            )
        image = steps.plan_image_input(model, settings, options)
        classifier = steps.classifier_mode(model, options.labels)
        details: dict[str, Any] = settings.to_dict()
        warnings: list[str] = []
        module = model.module
        if precision == "int8":  # the run's shared PT2E program: same scales as the other targets
            from edgekit.targets.coreml.int8 import shared_int8_module

            module, details["quantization"] = shared_int8_module(model, settings, options, calibration)
        source, probabilities = steps.make_source(model, module, settings, image, classifier)
        inputs = steps.convert_inputs(ct, model, settings, image)
        mlmodel = steps.run_converter(ct, source, model, settings, precision, inputs, options.labels, probabilities)
        details.update(steps.route_details(mlmodel))  # which converter route worked (automatic fallbacks)
        try:
            if settings.format == "mlpackage":
                mlmodel = quantize.compress_mlprogram(mlmodel, precision, settings.prune)
            else:
                mlmodel = quantize.compress_neuralnetwork(mlmodel, precision)
        except ValueError as exc:  # coremltools says which OS an op needs; settings should have caught it
            raise ConversionError(f"coremltools could not apply {precision}: {str(exc).splitlines()[0][:300]}") from exc
        user = {
            f"{analysis.EDGEKIT_KEY}.version": __version__,
            f"{analysis.EDGEKIT_KEY}.precision": precision,
            analysis.COMPUTE_UNITS_KEY: settings.compute_units,
        }
        if image is not None:
            user[analysis.IMAGE_KEY] = json.dumps({image.name: image.describe()})
        description = f"{options.name + ': ' if options.name else ''}converted by edgekit {__version__} ({precision}, from a PyTorch {model.source_form})"
        mlmodel = steps.finish(ct, mlmodel, model, settings, options.labels, image, user, description)
        path = os.path.join(workdir, f"model{settings.suffix}")
        mlmodel.save(path)
        reference = model.reference([t.numpy() for t in model.example_inputs])
        details.update(self._checks(path, model, reference, image, classifier, options.labels))
        if (precision in COMPRESSED_PRECISIONS or settings.prune) and details["weights"]["fraction_compressed"] < 0.5:
            what = precision + (f" --prune {settings.prune:g}" if settings.prune else "")
            warnings.append(
                f"coreml {what}: only {details['weights']['fraction_compressed']:.0%} of the weights are compressed "
                f"(tensors under {quantize.WEIGHT_THRESHOLD} elements stay float)"
            )
        input_specs, output_specs = analysis.io_specs(analysis.read_spec(path))
        # the neural network format, and flexible-shape programs, leave output shapes unstated:
        # record the shapes the model produces for its example inputs, as other targets do
        output_specs = [
            spec if spec.shape else dataclasses.replace(spec, shape=tuple(ref.shape))
            for spec, ref in zip(output_specs, reference)
        ]
        return ConvertedArtifact(
            path=path,
            inputs=input_specs,
            outputs=output_specs,
            converter={"coremltools": package_version("coremltools")},
            details=details,
            # off macOS edgekit's MIL reference interpreter verifies what it can execute
            unverifiable_reason=None if can_execute() else details["verification"]["unverifiable_reason"],
            warnings=warnings,
        )

    def _checks(self, path: str, model, reference, image, classifier, labels) -> dict[str, Any]:
        """What can be checked without executing Core ML: it loads, its I/O is what was asked."""
        import_coremltools().models.MLModel(path, skip_model_load=True)  # parses the package, compiles nothing
        spec = analysis.read_spec(path)
        inputs, outputs = analysis.io_specs(spec)
        problems = []
        if [s.name for s in inputs] != [s.name for s in model.inputs]:
            problems.append(f"inputs {[s.name for s in inputs]} != {[s.name for s in model.inputs]}")
        flexible = {(a.input, a.axis) for a in model.dynamic}
        for got, wanted in zip(inputs, model.inputs):
            fixed = [i for i in range(len(wanted.shape)) if (wanted.name, i) not in flexible]
            if len(got.shape) != len(wanted.shape) or any(got.shape[i] != wanted.shape[i] for i in fixed):
                problems.append(f"input {wanted.name} shape {got.shape} != {wanted.shape}")
        if [s.name for s in outputs] != list(model.output_names):
            problems.append(f"outputs {[s.name for s in outputs]} != {list(model.output_names)}")
        for got, ref in zip(outputs, reference if not flexible else []):
            if got.shape and tuple(got.shape) != tuple(ref.shape):
                problems.append(f"output {got.name} shape {got.shape} != the model's {tuple(ref.shape)}")
        if problems:
            raise ConversionError("the Core ML model's I/O does not match the PyTorch model: " + "; ".join(problems))
        stats = analysis.weight_stats(path, spec)
        tensors = stats.pop("tensors")
        facts: dict[str, Any] = {
            "checks": {"loads_without_compiling": True, "io_matches_model": True, "executed": can_execute()},
            "verification": _verification(path, spec),
            "ops": analysis.op_histogram(spec),
            "weights": stats,
            "compressed_tensors": len(tensors),
            **analysis.describe_io(spec),
        }
        if image is not None:
            facts["image_input"] = {"name": image.name, **image.describe()}
        if classifier is not None:
            facts["classifier"] = {**facts.get("classifier", {}), "classes": len(labels), "softmax_added": classifier == "softmax"}
        return facts

    def embed_manifest(self, path: str, manifest: dict[str, Any]) -> None:
        """Store the manifest (less its own size and sha256) as user-defined metadata in the model."""
        spec = analysis.read_spec(path)
        body = {k: v for k, v in manifest.items() if k not in ("size_bytes", "sha256")}
        from edgekit.manifest import dumps

        spec.description.metadata.userDefined[analysis.MANIFEST_KEY] = json.dumps(json.loads(dumps(body)), separators=(",", ":"))
        analysis.write_spec(path, spec)

    def runtime(self) -> Runtime:
        """Core ML itself on macOS; elsewhere the MIL reference interpreter (which refuses a program it
        cannot execute, saying why)."""
        return CoreMLRuntime() if can_execute() else MILReferenceRuntime()

    def inspect(self, path: str) -> dict[str, Any]:
        from edgekit.manifest import file_digest

        spec = analysis.read_spec(path)
        inputs, outputs = analysis.io_specs(spec)
        stats = analysis.weight_stats(path, spec)
        tensors = stats.pop("tensors")
        meta = analysis.metadata(spec)
        io_facts = analysis.describe_io(spec)
        summary = {
            "format": "ML Program (.mlpackage)" if analysis.model_type(spec) == "mlProgram" else f"neural network (.mlmodel, {analysis.model_type(spec)})",
            "deployment target": analysis.deployment_target(spec),
            "weights": f"{stats['compressed']}/{stats['total']} elements compressed ({stats['fraction_compressed']:.1%})"
            + (f", by kind {stats['by_kind']}" if stats["by_kind"] else "")
            + (f", sparsity {stats['sparsity']:.1%}" if stats.get("sparsity") is not None else ""),
            "weights on disk": f"{stats['weights_bytes']} bytes",
            "compute units": analysis.user_metadata(spec).get(analysis.COMPUTE_UNITS_KEY, "all"),
            "metadata": ", ".join(f"{k} {v!r}" for k, v in meta.items() if k in ("description", "author", "license", "version") and v),
            "embedded manifest": "yes" if meta["embedded_manifest"] else "no",
            "execution": "possible on this host" if can_execute() else _verification(path, spec)["summary"],
        }
        if io_facts.get("classifier"):
            summary["classifier"] = f"{io_facts['classifier']['label_output']} + {io_facts['classifier']['probabilities_output']}"
        if io_facts.get("image_inputs"):
            summary["image inputs"] = ", ".join(f"{k} ({v})" for k, v in io_facts["image_inputs"].items())
        return {
            "target": self.name,
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
            "ops": analysis.op_histogram(spec),
            "quantized_tensors": tensors,
            "weights": stats,
            "metadata": meta,
            "io": io_facts,
            "summary": summary,
            "size_bytes": file_digest(path)[0],
            "runtime": CoreMLRuntime().version(),
        }


def _verification(path: str, spec) -> dict[str, Any]:
    """How parity is checked for this artifact on this host: Core ML, the reference interpreter, or not."""
    if can_execute():
        return {"by": "Core ML", "unverifiable_reason": None, "summary": "Core ML (this host is macOS)"}
    from edgekit.targets.coreml import mil

    reason = reason_unverifiable(path, spec)
    if reason is None:
        return {"by": mil.NAME, "unverifiable_reason": None, "reference": True,
                "summary": f"{mil.NAME} (Core ML executes only on macOS)"}
    return {"by": None, "unverifiable_reason": reason, "summary": reason}

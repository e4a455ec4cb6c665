"""The ExecuTorch target: the shared ExportedProgram -> (quantize) -> to_edge_transform_and_lower
with a delegate's partitioner (XNNPACK by default) -> .pte, with a delegation report, and a
BundledProgram (.bpte) with reference inputs/outputs on request (--bundle).
"""
from __future__ import annotations

import contextlib
import os
from types import MappingProxyType
from typing import Any

from edgekit.errors import ConversionError, EdgekitError, ModelLoadError
from edgekit.targets.base import ConvertedArtifact, OnDevice, Target, TensorSpec, package_version
from edgekit.targets.executorch import bundle as bundle_mod
from edgekit.targets.executorch import delegates as delegates_mod
from edgekit.targets.executorch import quantize as recipes
from edgekit.targets.executorch import report as report_mod
from edgekit.targets.executorch.runtime import IO_METHOD, ExecuTorchRuntime, io_names_json
from edgekit.targets.executorch.settings import ExecuTorchSettings




class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    extra_suffixes = (bundle_mod.SUFFIX,)  # `edgekit inspect model.bpte` works too
    settings_class = ExecuTorchSettings
    shared_int8 = True
    on_device = OnDevice(
        "ExecuTorch",
        runner="executor_runner",
        runner_help="build it from the ExecuTorch repository for Android (examples/portable/executor_runner, "
        "with the Android NDK toolchain and the XNNPACK backend)",
        python_module="executorch",
        apps=MappingProxyType({"android": "executorch", "ios": "executorch"}),
    )
    precisions = ("none", "fp16", "int8", "int8-dynamic", "int8-int4")
    supports_dynamic = True  # torch.export Dims; memory is planned for each axis's upper bound
    requires = ("executorch", "torchao")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--delegate", dest="executorch_delegate", metavar="NAME",
            help=f"ExecuTorch backend to lower to: {', '.join(delegates_mod.DELEGATES)} "
            f"(none = portable kernels); default {delegates_mod.DEFAULT_DELEGATE}",
        )
        parser.add_argument(
            "--bundle", dest="executorch_bundle", action="store_true",
            help="also write a BundledProgram (.bpte) with reference inputs and expected outputs for on-device checks",
        )
        parser.add_argument(
            "--bundle-samples", dest="executorch_bundle_samples", type=int, metavar="N",
            help=f"test cases in the .bpte (from the evaluation samples; default {bundle_mod.DEFAULT_SAMPLES})",
        )
        parser.add_argument(
            "--executorch-group-size", dest="executorch_group_size", type=int, metavar="N",
            help=f"int8-int4: weights per int4 quantization group (default {recipes.DEFAULT_GROUP_SIZE})",
        )

    @classmethod
    def options_from_args(cls, args) -> dict[str, Any]:
        values = {
            "delegate": getattr(args, "executorch_delegate", None),
            "bundle": getattr(args, "executorch_bundle", False) or None,
            "bundle_samples": getattr(args, "executorch_bundle_samples", None),
            "group_size": getattr(args, "executorch_group_size", None),
        }
        return {k: v for k, v in values.items() if v is not None}

    @classmethod
    def settings(cls, options) -> dict[str, Any]:
        """This target's options (targets/executorch/settings.py), the delegate resolved against the
        installed executorch."""
        typed = cls.read_settings(options)
        return {"delegate": delegates_mod.resolve(typed.delegate), "bundle": typed.bundle,
                "bundle_samples": typed.bundle_samples, "group_size": typed.group_size}

    def convert(self, model, precision, options, calibration, workdir) -> ConvertedArtifact:
        self.require()
        settings = self.settings(options)
        delegate = settings["delegate"]
        try:
            program, quant_facts = recipes.prepare_program(
                model, precision, delegate, calibration, settings["group_size"], options=options
            )
            from edgekit.targets.executorch import convert as lowering

            program, lowering_facts = lowering.prepare_for_lowering(program)  # recurrent layers: delegable cells
            if precision == "fp16" and program is not model.exported_program():
                casts = lowering.unify_float16(program)  # before minutes of lowering, not after
                if casts:
                    lowering_facts["float16_casts_inserted"] = casts
            half_files = precision == "fp16" and delegate.name == "xnnpack"
            with lowering.float16_filters() if half_files else contextlib.nullcontext() as kept:
                edge = self._lower(program, model, delegate, precision)
            mixed = lowering.mixed_dtype_nodes(edge)  # names the module when the run below fails
            delegation = report_mod.from_edge_program(edge, delegate.name)
            if kept and any("convolution" in op for op in delegation["delegated_ops"]):
                lowering_facts["float16_filters"] = "convolution filters and biases stored float16 (XNNPACK widens them to float32 by default)"
            executorch_program = edge.to_executorch(self._backend_config(delegate))
        except EdgekitError:
            raise
        except Exception as exc:
            from edgekit.export import describe_conversion_error

            raise describe_conversion_error(exc, model, "executorch") from exc
        path = os.path.join(workdir, f"model{self.suffix}")
        with open(path, "wb") as fh:
            executorch_program.write_to_file(fh)

        self._check_kernels(path, delegation)
        runtime = ExecuTorchRuntime().load(path)
        used = list(delegation["backends"])
        reason = delegates_mod.unverifiable_reason(used)
        if reason is None:  # one run here: a program that cannot execute fails now, in seconds
            self._check_runs(path, model, mixed)
        details: dict[str, Any] = {
            "delegate": delegate.name,
            "runs_on": delegate.runs_on,
            "delegation": delegation,
            "delegation_summary": report_mod.summary_line(delegation),
            "io_names_method": IO_METHOD,
        }
        if quant_facts:
            details["quantization"] = quant_facts
        if lowering_facts:
            details["lowering"] = lowering_facts
        if model.dynamic:
            details["dynamic_upper_bounds"] = {s.name: list(s.shape) for s in runtime.inputs()}
        warnings = []
        if delegate.name != "none" and delegation["portable_nodes"]:
            warnings.append(f"executorch: {report_mod.summary_line(delegation)}")
        return ConvertedArtifact(
            path=path,
            # the model's names and example shapes (a dynamic axis's range is in the manifest's dynamic_axes)
            inputs=[TensorSpec(spec.name, spec.shape, rt.dtype) for spec, rt in zip(model.inputs, runtime.inputs())],
            outputs=runtime.outputs(),
            converter={"executorch": package_version("executorch"), "torchao": package_version("torchao")},
            details=details,
            unverifiable_reason=reason,
            warnings=warnings,
        )

    @staticmethod
    def _check_runs(path: str, model, mixed: list[str]) -> None:
        """Run the program once; on failure name the op whose inputs mix float16 and float32 (the
        portable kernels do not promote: the usual cause), else the runtime's failing check."""
        from edgekit.targets.executorch.convert import smoke_run

        error = smoke_run(path, model.example_inputs)
        if not error:
            return
        if mixed:
            raise ConversionError(
                f"executorch cannot convert op {mixed[0]}: its inputs mix float16 and float32, which the "
                f"portable kernels do not promote ({len(mixed)} such op(s); the run failed: {error})",
                hint="convert with --quantize none, or cast that layer's inputs to one dtype in the model",
            )
        raise ConversionError(
            f"executorch built a program that fails when run once on the example inputs: {error}",
            hint="try --delegate none or another --quantize",
        )

    @staticmethod
    def _check_kernels(path: str, delegation: dict[str, Any]) -> None:
        """Ops left outside the delegates run on the runtime's kernel libraries: one without a kernel
        would fail only when an app loads the program, so it fails the conversion here instead."""
        missing = report_mod.missing_kernels(
            report_mod.from_pte(path).get("forward", {}).get("portable_kernel_calls", {}),
            delegates_mod.runtime_operators(), delegation,
        )
        if missing:
            more = f"; {len(missing) - 1} more: {'; '.join(missing[1:4])}" if len(missing) > 1 else ""
            raise ConversionError(
                f"executorch cannot convert op {missing[0]}: the executorch {delegates_mod.executorch_version()} "
                f"runtime has no such kernel{more}",
                hint="rewrite that layer with supported ops, or build a runtime with a custom kernel for it",
            )

    @staticmethod
    def _lower(program, model, delegate, precision):
        from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

        return to_edge_transform_and_lower(
            program,
            partitioner=delegates_mod.partitioners(delegate, precision),
            # XNNPACK's own recipe turns the IR check off: its passes emit ops outside core ATen
            compile_config=EdgeCompileConfig(_check_ir_validity=delegate.name == "none"),
            constant_methods={IO_METHOD: io_names_json([i.name for i in model.inputs], model.output_names)},
        )

    @staticmethod
    def _backend_config(delegate):
        from executorch.exir import ExecutorchBackendConfig

        # delegate payloads in their own aligned segments (what executorch's XNNPACK recipe does)
        return ExecutorchBackendConfig(extract_delegate_segments=delegate.name != "none")

    def add_extra_files(self, converted, model, samples, options, workdir) -> None:
        """--bundle: write the .bpte from the evaluation samples, and run it back here when the
        runtime has its backends, recording the largest error a device check should allow."""
        settings = self.settings(options)
        if not settings["bundle"]:
            return
        chosen = list(samples.samples[: settings["bundle_samples"]])
        bundle_path = os.path.join(workdir, f"model{bundle_mod.SUFFIX}")
        count = bundle_mod.write_bundle(converted.path, bundle_path, model, chosen, [o.dtype for o in converted.outputs])
        info: dict[str, Any] = {
            "test_cases": count,
            "inputs_from": samples.source,
            "expected_outputs": "eager PyTorch model (float32)",
        }
        if converted.unverifiable_reason is None:
            info["max_abs_error"] = bundle_mod.run_bundle(bundle_path)["max_abs_error"]
            info["checked_with"] = ExecuTorchRuntime().version()
        else:
            info["not_run_here"] = "this host's runtime cannot run the program's delegates"
        converted.details["bundle"] = info
        converted.extra_files.append(bundle_path)

    def runtime(self) -> ExecuTorchRuntime:
        return ExecuTorchRuntime()

    def inspect(self, path: str) -> dict[str, Any]:
        """I/O, kernel calls and delegate calls read from the .pte (or .bpte); the node-level
        delegation report comes from the manifest beside the artifact when there is one."""
        from edgekit import manifest as manifest_mod

        info: dict[str, Any] = {"target": self.name, "size_bytes": os.path.getsize(path)}
        program_path, cleanup = path, None
        try:
            if path.lower().endswith(bundle_mod.SUFFIX):
                program_bytes, cases = bundle_mod.read_bundle(path)
                info["bundled_test_cases"] = cases
                program_path = cleanup = _temp_file(program_bytes)
            try:
                methods = report_mod.from_pte(program_path)
            except Exception as exc:
                raise ModelLoadError(f"{path}: not a readable ExecuTorch program ({type(exc).__name__})") from exc
            runtime = ExecuTorchRuntime().load(program_path)
        finally:
            if cleanup:
                os.remove(cleanup)
        forward = methods.get("forward", {})
        info["inputs"] = [s.to_dict() for s in runtime.inputs()]
        info["outputs"] = [s.to_dict() for s in runtime.outputs()]
        info["ops"] = dict(forward.get("portable_kernel_calls", {}))
        info["delegate_calls"] = forward.get("delegate_calls", {})
        info["methods"] = sorted(methods)
        info["runtime"] = runtime.version()
        summary = {"delegate calls": ", ".join(f"{k} x{v}" for k, v in info["delegate_calls"].items()) or "none"}
        try:  # a manifest edgekit cannot read is said by `edgekit inspect` itself; its facts are not used
            found = manifest_mod.beside(path if path.endswith(self.suffix) else path[: -len(bundle_mod.SUFFIX)] + self.suffix)
        except manifest_mod.ManifestError:
            found = None
        if found is not None:
            delegation = found.target_details.get("delegation")
            if delegation:
                info["delegation"] = delegation
                summary["delegation (from the manifest)"] = report_mod.summary_line(delegation)
        else:
            summary["delegation"] = "node counts need the manifest beside the artifact; the .pte keeps delegate payloads opaque"
        info["summary"] = summary
        return info


def _temp_file(data: bytes) -> str:
    import tempfile

    fd, name = tempfile.mkstemp(suffix=".pte")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name

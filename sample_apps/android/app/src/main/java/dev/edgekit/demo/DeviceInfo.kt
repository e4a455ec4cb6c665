package dev.edgekit.demo

import android.os.Build
import java.io.File

/** Facts about the phone for the benchmark record, and the process's resident memory. */
object DeviceInfo {
    fun facts(deviceId: String): DeviceFacts = DeviceFacts(
        id = deviceId,
        model = "${Build.MANUFACTURER} ${Build.MODEL}".trim(),
        os = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
        cpu = if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else Build.HARDWARE,
        cores = Runtime.getRuntime().availableProcessors(),
    )

    /** VmRSS / VmHWM from /proc/self/status, in bytes (the kernel reports kB). */
    private fun status(key: String): Long? = runCatching {
        File("/proc/self/status").readLines().firstOrNull { it.startsWith("$key:") }
            ?.split(Regex("\\s+"))?.getOrNull(1)?.toLong()?.times(1024)
    }.getOrNull()

    fun rssBytes(): Long? = status("VmRSS")

    fun peakRssBytes(): Long? = status("VmHWM")
}

import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.edgekit.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgekit.demo"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        // Stamped into every benchmark record (runtime.version).
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
        buildConfigField("String", "EXECUTORCH_VERSION", "\"${libs.versions.executorch.get()}\"")
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64") // the ABIs ExecuTorch's AAR ships
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            // Signed with the debug key so `installRelease` works for benchmarking without a keystore.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    // Model files are copied out of the APK to app storage before loading; keeping them
    // uncompressed makes that copy a plain read. Every format `edgekit package --app android`
    // accepts must be listed here.
    androidResources {
        noCompress += listOf("tflite", "pte")
    }

    buildFeatures {
        buildConfig = true
    }

    // Native libraries stay compressed in the APK and are extracted at install (what the removed
    // android:extractNativeLibs="true" said): the LiteRT and ExecuTorch .so files are large.
    packaging {
        jniLibs {
            useLegacyPackaging = true
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

// Kotlin 2.x: compilerOptions replaces the Kotlin options block that used to sit inside android { } (deprecated).
kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(libs.litert)
    implementation(libs.litert.api)
    implementation(libs.litert.gpu)
    implementation(libs.litert.gpu.api)
    implementation(libs.executorch.android)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
}

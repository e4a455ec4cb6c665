pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google() // LiteRT (com.google.ai.edge.litert) is published on Google's Maven
        mavenCentral() // ExecuTorch (org.pytorch:executorch-android)
    }
}
rootProject.name = "EdgekitDemo"
include(":app")
